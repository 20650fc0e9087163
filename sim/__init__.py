"""Robot and app simulators (aiortc) for the WIM-Z relay, and the end-to-end demo.

- `sim.robot` — a robot: signed `/ws/device` login, a generated video track and an echoing data channel.
- `sim.app` — a phone app: REST login, `/ws/app`, answers the robot's offer and counts decoded frames.
- `sim.demo` — one real call through a relay (started on 127.0.0.1 or given with `--url`).

They speak the wire contract (protocol.md) only and never import the relay's Django code, so they
run against any relay, local or remote.
"""
