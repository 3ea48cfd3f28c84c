#!/usr/bin/env bash
# One scripted install, used by the README and by CI alike.
#   scripts/setup.sh          runtime + test tools into .venv (idempotent; re-running is cheap)
# Environment: VIVARL_VENV (default .venv), VIVARL_PYTHON (default python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VIVARL_VENV:-.venv}"
python="${VIVARL_PYTHON:-python3.11}"

# FFmpeg shared libraries for torchcodec (LeRobotDataset video decoding), EGL/OSMesa for offscreen MuJoCo, and a
# headless browser for the operator console's browser test.
apt_packages=(libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8
              libegl1 libgl1 libosmesa6 chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup.sh: missing system packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade "pip>=24"
"${pip[@]}" -c constraints.txt -r requirements.txt -r requirements-dev.txt
# LeRobot 0.4.4 pins torch<2.11; its dependencies are in requirements.txt, so install it alone.
"${pip[@]}" -c constraints.txt --no-deps lerobot==0.4.4
"${pip[@]}" -c constraints.txt --no-deps -e .

# Guard: exactly one torch, the pinned one.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
want = {"torch": "2.14.1", "torchvision": "0.29.1"}
for name, version in want.items():
    got = md.version(name)
    if got != version:
        raise SystemExit(f"setup.sh: {name}=={got} was installed, expected {version}: check constraints.txt")
PY
echo "setup.sh: environment ready in $venv"
