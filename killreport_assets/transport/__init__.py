"""Transports: where job handlers run — the embedded pool (`inline`), or RabbitMQ (`rabbitmq` on the
asset's side, `worker` for `killreport worker`, sharing `topology`, `publisher` and `amqp`)."""
