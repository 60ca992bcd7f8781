"""One module per `fastgpt` subcommand; each exposes `register(subparsers)`."""
