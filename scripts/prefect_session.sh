#!/usr/bin/env bash
# Run a command (e.g. `dvc repro`) against one local Prefect server started here, so every
# flow of the run reports to it instead of each stage starting its own temporary server
# (~10 s per stage). With PREFECT_API_URL already set (`make ui`), that server is used.
set -euo pipefail
if [[ -n "${PREFECT_API_URL:-}" ]]; then
  exec "$@"
fi
py=${PYTHON:-python}
home=${PREFECT_HOME:-$PWD/.prefect}
mkdir -p "$home"
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# the UI asks the API at PREFECT_UI_API_URL (default port 4200): point it at this port
PREFECT_UI_API_URL="http://127.0.0.1:$port/api" prefect server start --host 127.0.0.1 --port "$port" >"$home/session-server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
export PREFECT_API_URL="http://127.0.0.1:$port/api"
for _ in $(seq 240); do
  if "$py" -c "import urllib.request as u; u.urlopen('$PREFECT_API_URL/health', timeout=2)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "prefect server did not start; see $home/session-server.log" >&2
    exit 1
  fi
  sleep 0.5
done
"$@"
