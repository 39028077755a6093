"""NOTIFY (dnspol.notify): what is owed to whom, the message, answers, retries."""

import socket

import dns.flags
import dns.message
import dns.opcode
import dns.rdatatype
import pytest
from test_transfer import CONFIG, KEYS, SERIAL, ZONE, write_config

from dnspol.config import check_config, load_config
from dnspol.notify import RETRY_AFTER, Notifier
from dnspol.state import snapshot_from_config


@pytest.fixture
def secondary():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def snapshot(tmp_path, port: int, zone: str = ZONE, key: str = "internal"):
    config = CONFIG.replace(
        "      internal: {overlay: internal.zone}\n",
        "      internal: {overlay: internal.zone}\n"
        f"    notify: [{{address: '127.0.0.1:{port}', key: {key}}}]\n",
    )
    return snapshot_from_config(load_config(str(write_config(tmp_path, config, zone))))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def receive(sock, key="internal"):
    data, peer = sock.recvfrom(65535)
    message = dns.message.from_wire(data, keyring=KEYS[key])
    return message, peer


def ack(sock, message, peer, rcode=0):
    reply = dns.message.make_response(message)
    reply.set_rcode(rcode)
    sock.sendto(reply.to_wire(), peer)


def test_a_notify_is_signed_carries_the_soa_and_is_acknowledged(tmp_path, secondary):
    port = secondary.getsockname()[1]
    notifier = Notifier()
    notifier.follow(snapshot(tmp_path, port))
    notifier.tick()
    message, peer = receive(secondary)  # the MAC checks out with the key
    assert message.opcode() == dns.opcode.NOTIFY and message.flags & dns.flags.AA
    assert [q.to_text() for q in message.question] == ["example.com. IN SOA"]
    assert message.answer[0].rdtype == dns.rdatatype.SOA
    assert message.answer[0][0].serial == SERIAL
    ack(secondary, message, peer)
    for _ in range(50):
        notifier.tick()
        if not notifier.pending:
            break
        secondary.settimeout(0.01)
    assert notifier.pending == 0
    assert notifier.counts == {("example.com.", "sent"): 1, ("example.com.", "acked"): 1}


def test_only_a_changed_serial_is_notified_again(tmp_path, secondary):
    port = secondary.getsockname()[1]
    record = tmp_path / "notified.json"
    notifier = Notifier(record=record)
    notifier.follow(snapshot(tmp_path, port))
    notifier.tick()
    ack(secondary, *receive(secondary))
    while notifier.pending:
        notifier.tick()
    notifier.follow(snapshot(tmp_path, port))  # reloaded, same serial
    assert notifier.pending == 0
    later = Notifier(record=record)  # the next generation reads what was notified
    later.follow(snapshot(tmp_path, port))
    assert later.pending == 0
    bumped = ZONE.replace(str(SERIAL), str(SERIAL + 1))
    later.follow(snapshot(tmp_path, port, bumped))
    assert later.pending == 1
    later.tick()
    message, _ = receive(secondary)
    assert message.answer[0][0].serial == SERIAL + 1


def test_an_unanswered_notify_is_retried_with_backoff_then_given_up(tmp_path, secondary):
    port = secondary.getsockname()[1]
    clock = Clock()
    notifier = Notifier(clock=clock)
    notifier.follow(snapshot(tmp_path, port))
    sent = []
    for step in range(400):
        clock.now = step * 0.25
        notifier.tick()
        secondary.settimeout(0)
        try:
            secondary.recvfrom(65535)
            sent.append(clock.now)
        except BlockingIOError:
            pass
    assert [b - a for a, b in zip(sent, sent[1:], strict=False)] == list(RETRY_AFTER)
    assert notifier.pending == 0
    assert notifier.counts == {("example.com.", "sent"): 6, ("example.com.", "failed"): 1}


def test_a_notify_target_with_an_unknown_key_is_named(tmp_path):
    config = CONFIG.replace(
        "      internal: {overlay: internal.zone}\n",
        "      internal: {overlay: internal.zone}\n"
        "    notify: [192.0.2.7, {address: '[2001:db8::7]:5300', key: nope}]\n",
    )
    problems = check_config(str(write_config(tmp_path, config)))
    assert any("unknown key 'nope'" in problem for problem in problems), problems


def test_notify_counts_reach_the_metrics():
    from dnspol.metrics import Folder
    from dnspol.stats import Stats

    stats = Stats()
    stats.notifies[("example.com.", "acked")] = 2
    folder = Folder(stats)
    folder.fold()
    assert folder.totals.get("dnspol_notify_total", ("example.com.", "acked")) == 2
