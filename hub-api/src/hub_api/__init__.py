"""hub-api: the publisher. Verifies each event and answers only after RabbitMQ confirmed it."""
