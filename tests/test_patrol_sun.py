"""NTAG 424 DNA SUN verification against NXP AN12196's published vectors and simulated tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parkguard.core.patrol.sun import (
    SunError,
    counter_verdict,
    decrypt_picc_data,
    parse_sun,
    sdm_mac,
    session_mac_key,
    simulate_tap,
    verify_sun,
)

# AN12196 §3.3/§3.4 (also rfidhacking/node-sdm test/verify.js): zero keys, UID mirroring
# and SDMReadCtr mirroring, SDMMAC over an empty input.
AN12196_KEY = bytes(16)
AN12196_PICC = "EF963FF7828658A599F3041510671E88"
AN12196_CMAC = "94EED9EE65337086"
AN12196_UID = "04DE5F1EACC040"
AN12196_COUNTER = 61  # 3D0000 little-endian
AN12196_SESSION_KEY = "3FB5F6E3A807A03D5E3570ACE393776F"
AN12196_URL = f"https://choose.url.com/ntag424?picc_data={AN12196_PICC}&cmac={AN12196_CMAC}"

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("04A10000000002")


def test_an12196_picc_data_decrypts_to_its_uid_and_counter() -> None:
    reading = decrypt_picc_data(AN12196_KEY, bytes.fromhex(AN12196_PICC))
    assert (reading.uid_hex, reading.counter) == (AN12196_UID, AN12196_COUNTER)


def test_an12196_session_key_and_sdmmac() -> None:
    uid = bytes.fromhex(AN12196_UID)
    assert session_mac_key(AN12196_KEY, uid, AN12196_COUNTER).hex().upper() == \
        AN12196_SESSION_KEY
    assert sdm_mac(AN12196_KEY, uid, AN12196_COUNTER).hex().upper() == AN12196_CMAC


def test_an12196_url_verifies_whole_or_as_a_query() -> None:
    for text in (AN12196_URL, f"picc_data={AN12196_PICC}&cmac={AN12196_CMAC}"):
        reading = verify_sun(text, AN12196_KEY, uid=bytes.fromhex(AN12196_UID))
        assert reading.counter == AN12196_COUNTER


def test_simulate_tap_reproduces_the_an12196_message_bit_for_bit() -> None:
    made = simulate_tap(AN12196_KEY, AN12196_UID, AN12196_COUNTER,
                        padding=bytes.fromhex("DA5CF60941"))
    assert made == f"picc_data={AN12196_PICC}&cmac={AN12196_CMAC}"


@given(counter=st.integers(0, 0xFFFFFF), uid=st.binary(min_size=7, max_size=7),
       key=st.binary(min_size=16, max_size=16))
def test_every_simulated_tap_verifies_with_its_key(counter: int, uid: bytes, key: bytes) -> None:
    reading = verify_sun(simulate_tap(key, uid, counter), key, uid=uid)
    assert (reading.uid, reading.counter) == (uid, counter)


def test_simulated_taps_differ_each_time_like_a_real_tag() -> None:
    assert simulate_tap(KEY, UID, 5) != simulate_tap(KEY, UID, 5)  # random padding


def test_a_cloned_tag_without_the_key_is_refused_as_forged() -> None:
    wrong = bytes.fromhex("ffeeddccbbaa99887766554433221100")
    with pytest.raises(SunError) as refused:
        verify_sun(simulate_tap(wrong, UID, 7), KEY, uid=UID)
    assert refused.value.reason == "forged"


def test_a_tampered_mac_or_counter_is_refused() -> None:
    good = simulate_tap(KEY, UID, 7)
    picc, mac = parse_sun(good)
    flipped = bytes([mac[0] ^ 1]) + mac[1:]
    with pytest.raises(SunError, match="forged"):
        verify_sun(f"picc_data={picc.hex()}&cmac={flipped.hex()}", KEY)
    # the MAC of counter 7 does not cover counter 8's PICC data
    other, _ = parse_sun(simulate_tap(KEY, UID, 8))
    with pytest.raises(SunError, match="forged"):
        verify_sun(f"picc_data={other.hex()}&cmac={mac.hex()}", KEY)


def test_a_message_copied_onto_another_uid_is_refused() -> None:
    with pytest.raises(SunError) as refused:
        verify_sun(simulate_tap(KEY, UID, 7), KEY, uid=bytes.fromhex("04A10000000009"))
    assert refused.value.reason == "uid_mismatch"


@pytest.mark.parametrize("text", ["", "picc_data=00&cmac=11", "cmac=94EED9EE65337086",
                                  f"picc_data={AN12196_PICC}&cmac={AN12196_CMAC}"
                                  f"&cmac={AN12196_CMAC}"])
def test_malformed_messages_are_refused(text: str) -> None:
    with pytest.raises(SunError) as refused:
        verify_sun(text, KEY)
    assert refused.value.reason == "malformed"


T0 = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


def test_the_counter_only_increases_with_time() -> None:
    seen = [(10, T0), (12, T0 + timedelta(hours=1))]
    assert counter_verdict(13, T0 + timedelta(hours=2), seen) == "ok"
    assert counter_verdict(12, T0 + timedelta(hours=2), seen) == "replayed"
    assert counter_verdict(9, T0 + timedelta(hours=2), seen) == "stale"  # harvested earlier
    # an offline reader's older tap uploaded late fits between its neighbours
    assert counter_verdict(11, T0 + timedelta(minutes=30), seen) == "ok"
    assert counter_verdict(11, T0 + timedelta(hours=3), seen) == "stale"
