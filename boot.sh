#!/bin/sh
# The API container's command: serve the Flask app with gunicorn.
# Migrations are not run here: the compose `migrate` service runs them once, before the API starts.
# Extra arguments go to gunicorn (e.g. `--workers 4`); gunicorn also reads GUNICORN_CMD_ARGS.
set -e
# Uploads of hundreds of MB outlast gunicorn's default 30 s worker timeout.
exec gunicorn --bind 0.0.0.0:8000 --timeout 300 --access-logfile - "$@" "api:create_app()"
