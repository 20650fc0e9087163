"""The simulators' contract pieces, without a relay: signature, ICE servers and candidates."""

from aiortc import RTCIceServer

from devices.signing import sign as relay_sign
from sim.client import http_url, ws_url
from sim.client import sign as robot_sign
from sim.common import candidate_from_frame, rtc_configuration, sdp_candidates
from tests.fixtures import aiortc_call


def test_robot_signature_is_the_one_the_relay_checks():
    """The simulator's HMAC (kept apart from Django code) equals devices.signing.sign."""
    assert robot_sign("s3cret", "wimz_robot_01", 1767225600) == relay_sign("s3cret", "wimz_robot_01", 1767225600)


def test_sdp_candidates_are_the_trickle_frames_aiortc_produces():
    """Candidates read from a real aiortc offer/answer equal the recorded trickle candidates, key for key."""
    call = aiortc_call()
    assert sdp_candidates(call["offer"]["sdp"]) == call["robot_candidates"]
    assert sdp_candidates(call["answer"]["sdp"]) == call["app_candidates"]


def test_candidate_from_frame_keeps_mid_and_index():
    """A `webrtc_ice` candidate dict becomes an aiortc candidate; an empty one (end of candidates) None."""
    frame = aiortc_call()["robot_candidates"][2]
    candidate = candidate_from_frame(frame)
    assert (candidate.ip, candidate.type, candidate.sdpMid, candidate.sdpMLineIndex) == ("192.0.2.2", "host", "1", 1)
    assert candidate_from_frame({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}) is None


def test_rtc_configuration_from_relay_ice_servers():
    """STUN and TURN dicts become RTCIceServer objects; entries without urls are skipped."""
    config = rtc_configuration(
        [
            {"urls": ["stun:stun.example:3478"]},
            {"urls": "turn:turn.example:3478?transport=udp", "username": "1767225600:7", "credential": "c2VjcmV0"},
            {"username": "no-urls"},
        ]
    )
    assert config.iceServers == [
        RTCIceServer(urls=["stun:stun.example:3478"]),
        RTCIceServer(urls="turn:turn.example:3478?transport=udp", username="1767225600:7", credential="c2VjcmV0"),
    ]
    assert rtc_configuration([]).iceServers == []


def test_relay_urls():
    """HTTP base URLs map to ws(s) endpoints with the token in the query string, and back."""
    assert ws_url("http://127.0.0.1:8000/", "/ws/app", token="a.b.c") == "ws://127.0.0.1:8000/ws/app?token=a.b.c"
    assert ws_url("https://relay.example", "/ws/device") == "wss://relay.example/ws/device"
    assert http_url("wss://relay.example", "/health") == "https://relay.example/health"
