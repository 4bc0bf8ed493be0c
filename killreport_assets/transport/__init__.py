"""Transports: where job handlers run (the embedded pool now; RabbitMQ workers next)."""
