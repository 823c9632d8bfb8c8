"""`posttrain serve`: an OpenAI-compatible HTTP server on the rollout engine, with Markovian RSA per request."""
