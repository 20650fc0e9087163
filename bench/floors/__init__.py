"""The bench's floors: relays with no application logic, measured in the same run as the WIM-Z relay.

- `raw_ws`: a minimal relay on the `websockets` library (no Django, no channel layer).
- `channels_floor`: the relay's stack (daphne + Channels + the relay's `CHANNEL_LAYERS`) with a consumer
  that only forwards.

Both pair a robot socket `/r/<key>` with the app socket(s) `/a/<key>` and forward each text frame
unchanged to the other side (a robot frame to every app socket of its key), so the same load
generator and frames run against them and the relay.
"""
