"""KDLOCK framing and formats (kd/lock/protocol.py)."""

import pytest

from kd.lock import protocol as P


def test_framer_splits_lines_across_chunks_and_strips_cr():
    f = P.LineFramer()
    assert f.feed(b"OK 1") == []
    assert f.feed(b"23\r\nERR E_ARG bad\nOK") == [b"OK 123", b"ERR E_ARG bad"]
    assert f.feed(b"\n") == [b"OK"]


def test_framer_turns_an_overlong_line_into_one_marker_and_recovers():
    f = P.LineFramer(max_line=10)
    assert f.feed(b"x" * 8) == []
    assert f.feed(b"y" * 50) == []  # discarding, nothing buffered
    assert f.feed(b"zz\nOK 1\n") == [P.TOO_LONG, b"OK 1"]
    assert f.feed(b"0123456789\n01234567890\n") == [b"0123456789", P.TOO_LONG]
    assert f.feed(b"0123456789\r\n") == [b"0123456789"]  # CR does not count


def test_request_round_trip_and_refusals():
    assert P.encode_request("CHAL", "ab") == b"CHAL ab\n"
    assert P.parse_request(b"TICKET  PUT  abc") == P.Request("TICKET", ("PUT", "abc"))
    assert P.parse_request(b"   ") is None
    for bad in (("ECHO", "a b"), ("ECHO", ""), ("ECHO", "é"), ("ECHO", "x" * P.MAX_LINE)):
        with pytest.raises(ValueError):
            P.encode_request(*bad)
    with pytest.raises(P.RequestError) as e:
        P.parse_request(b"ID\xff")
    assert e.value.code == P.E_SYNTAX
    with pytest.raises(P.RequestError) as e:
        P.parse_request(b"A" * (P.MAX_LINE + 1))
    assert e.value.code == P.E_TOOLONG


def test_replies_parse_and_noise_is_none():
    assert P.parse_reply(b"OK KDLOCK 1 fw") == P.Reply(True, ("KDLOCK", "1", "fw"))
    assert P.parse_reply(b"OK") == P.Reply(True, ())
    assert P.parse_reply(b"ERR E_TICKET ticket is for another lock") == P.Reply(
        False, (), "E_TICKET", "ticket is for another lock")
    assert P.parse_reply(b"ERR E_NOTICKET") == P.Reply(False, (), "E_NOTICKET", "")
    for noise in (b"", b"\xff\xfeOK", b"OKAY", b"ERR", b"ERR nocode", b"hello"):
        assert P.parse_reply(noise) is None
    assert P.encode_err(P.E_ARG, "bad\n arg é") == b"ERR E_ARG bad? arg ?\n"


def test_challenge_message_is_domain_separated_and_checked():
    nonce = bytes(range(32))
    msg = P.challenge_message("KL-1", nonce, 1700000000123)
    assert msg == b"kaodian-lock-challenge-v1\0KL-1\0" + nonce + b"\0" + b"1700000000123"
    with pytest.raises(ValueError):
        P.challenge_message("KL-1", nonce[:31], 1)
    with pytest.raises(ValueError):
        P.challenge_message("bad id", nonce, 1)


def test_payload_parsers():
    assert P.parse_ms("0") == 0 and P.parse_ms("1700000000123") == 1700000000123
    for bad in ("-1", "01", "1.5", "", "12345678901234567"):
        with pytest.raises(ValueError):
            P.parse_ms(bad)
    assert P.parse_nonce("ab" * 32) == b"\xab" * 32
    for bad in ("ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(ValueError):
            P.parse_nonce(bad)
    assert P.b64decode(P.b64encode(b"k" * 32), 32) == b"k" * 32
    for bad in ("!!!!", P.b64encode(b"k" * 31)):
        with pytest.raises(ValueError):
            P.b64decode(bad, 32)
    assert P.parse_state(["id=KL-1", "ticket=0"]) == {"id": "KL-1", "ticket": "0"}
    with pytest.raises(ValueError):
        P.parse_state(["novalue"])


def test_site_codes_and_site_readings():
    """SITE (revision 2): 4-10 digits; E_NOSITE and E_UNKNOWN are answers; anything else is not."""
    assert P.check_site_code("11003") == "11003" and P.check_site_code("0001") == "0001"
    for bad in ("110", "12345678901", "1l003", "", "１１００３", "11003\n", None):
        with pytest.raises(ValueError):
            P.check_site_code(bad)
    assert P.site_reading(P.parse_reply(b"OK 11003")) == P.SiteReading(P.SITE_REGISTERED, "11003")
    assert P.site_reading(P.parse_reply(b"ERR E_NOSITE not registered")) == P.SiteReading(P.SITE_NONE)
    assert P.site_reading(P.parse_reply(b"ERR E_UNKNOWN unknown command")) == P.SiteReading(P.SITE_UNREPORTED)
    for line in (b"OK", b"OK 11003 11004", b"OK 11O03", b"ERR E_INTERNAL flash", b"ERR E_ARG x"):
        with pytest.raises(ValueError):
            P.site_reading(P.parse_reply(line))
    assert P.SITE in P.COMMANDS and P.SITE not in P.COMMANDS_R1
