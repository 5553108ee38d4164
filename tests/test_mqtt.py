"""MqttSink against a real Mosquitto broker started here on a free port, watched by a real paho client."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from live_server import free_port
from lrihar.config import MqttConfig
from lrihar.events import ActionEvent, Alert, Cycle
from lrihar.runtime.sinks.mqtt import MqttSink, topic_level

MOSQUITTO = "/usr/sbin/mosquitto"
SRC = Path(__file__).resolve().parents[1] / "src"


def wait_for(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Broker:
    """Mosquitto on 127.0.0.1:``port``, persisting sessions in ``folder`` so that a restart keeps
    the watcher's subscription (and queues what it missed)."""

    def __init__(self, folder: Path) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.skip(f"{MOSQUITTO} not installed (scripts/install.sh installs Debian's mosquitto): "
                        "MQTT test not run")
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        # `user`: as root, mosquitto would switch to user mosquitto, who cannot write its session file here.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
                             f"log_dest file {folder}/mosquitto.log\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

        def listening():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
            return False

        wait_for(listening, what="mosquitto to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


class Watcher:
    """A plant system: a paho client subscribed to everything under the prefix (QoS 1, kept session)."""

    def __init__(self, port: int, prefix: str, name: str = "watcher") -> None:
        self.messages: list[tuple[str, str, bool]] = []  # (topic, payload, retained)
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{port}",
                                  clean_session=False)
        self.client.on_connect = lambda c, u, flags, *a: (  # a kept session still holds it
            None if flags.session_present else c.subscribe(f"{prefix}/#", qos=1))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode(), bool(m.retain)))
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def payloads(self, topic: str) -> list[str]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def event(id_, state, end):
    return ActionEvent(id=id_, post="post-1", source="cam.mp4", track_id=1, label="screw", start=0.0, end=end,
                       confidence=0.9, frames=3, state=state)


def connected_sink(broker, **kw) -> MqttSink:
    sink = MqttSink(MqttConfig(port=broker.port, topic_prefix="line/a"), reconnect_s=(1, 1), **kw)
    wait_for(lambda: sink.connected, what="the sink to connect")
    return sink


def test_every_event_arrives_once_with_before_and_after_and_available_follows_the_sink(broker):
    watcher = Watcher(broker.port, "line/a")
    sink = connected_sink(broker)
    wait_for(lambda: watcher.payloads("line/a/available") == ["online"], what="online")
    sent = [event(1, "new", 1.0), event(2, "new", 1.5), event(1, "update", 2.0), event(1, "end", 3.0),
            event(2, "end", 4.0)]
    for item in sent:
        sink.emit(item)
    cycle = Cycle(id=1, post="post-1", start=0.0, end=4.0, steps_seen=["screw"], complete=True)
    sink.emit(cycle)
    sink.emit(Alert(id=1, post="post-1", cycle_id=1, kind="missing", step="check", at=4.0,
                    message="no check"))
    sink.close()
    wait_for(lambda: watcher.payloads("line/a/available") == ["online", "stopped"], what="stopped")
    wait_for(lambda: len(watcher.payloads("line/a/events")) >= 5, what="the events")
    got = [json.loads(p) for p in watcher.payloads("line/a/events")]
    assert [(g["type"], g["after"]["id"], g["after"]["end"]) for g in got] == [
        (e.state, e.id, e.end) for e in sent]  # each once, in order
    assert got[0]["before"] is None and got[1]["before"] is None
    assert got[2]["before"] == sent[0].to_dict() and got[2]["after"] == sent[2].to_dict()
    assert got[3]["before"] == sent[2].to_dict() and got[4]["before"] == sent[1].to_dict()
    assert [json.loads(p)["cycle_time"] for p in watcher.payloads("line/a/cycles")] == [4.0]
    assert [json.loads(p)["message"] for p in watcher.payloads("line/a/alerts")] == ["no check"]
    retained = [(t, r) for t, _, r in watcher.messages if t == "line/a/events"]
    assert not any(r for _, r in retained)
    watcher.close()

    late = Watcher(broker.port, "line/a", name="late")  # a late subscriber still learns the state
    wait_for(lambda: late.payloads("line/a/available") == ["stopped"], what="the retained stopped")
    wait_for(lambda: late.payloads("line/a/post-1/cycle"), what="the retained cycle")
    assert json.loads(late.payloads("line/a/post-1/cycle")[0])["id"] == 1
    assert late.payloads("line/a/alerts") == late.payloads("line/a/events") == []  # never retained
    late.close()


def test_the_last_will_says_offline_when_the_process_is_killed(broker):
    watcher = Watcher(broker.port, "line/a")
    script = ("import time\nfrom lrihar.config import MqttConfig\n"
              "from lrihar.runtime.sinks.mqtt import MqttSink\n"
              f"s = MqttSink(MqttConfig(port={broker.port}, topic_prefix='line/a'))\n"
              "while not s.connected: time.sleep(0.05)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert child.stdout.readline().strip() == "ready"
        wait_for(lambda: watcher.payloads("line/a/available") == ["online"], what="online")
        child.send_signal(signal.SIGKILL)
        wait_for(lambda: watcher.payloads("line/a/available") == ["online", "offline"], what="the last will")
    finally:
        child.kill()
        child.wait()
        watcher.close()


def test_publishing_resumes_after_a_broker_restart(broker):
    watcher = Watcher(broker.port, "line/a")
    commands: list[str] = []
    sink = connected_sink(broker, on_command=commands.append)
    sink.emit(event(1, "new", 1.0))
    wait_for(lambda: len(watcher.payloads("line/a/events")) == 1, what="the first event")

    broker.stop()
    wait_for(lambda: not sink.connected, what="the sink to notice the broker is gone")
    sink.emit(event(1, "update", 2.0))  # queued by paho while the broker is away
    assert sink.dropped == 0
    broker.start()
    wait_for(lambda: sink.connects == 2, timeout=15, what="the sink to reconnect")
    sink.emit(event(1, "end", 3.0))
    wait_for(lambda: len(watcher.payloads("line/a/events")) >= 3, timeout=15, what="events after the restart")
    got = [json.loads(p) for p in watcher.payloads("line/a/events")]
    assert [(g["type"], g["after"]["end"]) for g in got] == [("new", 1.0), ("update", 2.0), ("end", 3.0)]
    assert got[2]["before"]["end"] == 2.0
    assert watcher.payloads("line/a/available").count("online") == 2  # published again on reconnect

    # The command subscription was made again in on_connect (a restart forgets it).
    def command_arrived():
        watcher.client.publish("line/a/run/set", "stop", qos=1)
        time.sleep(0.2)
        return commands
    wait_for(command_arrived, what="a command after the restart")
    assert set(commands) == {"stop"}
    sink.close()
    watcher.close()


def test_close_is_bounded_when_the_broker_never_answers(tmp_path):
    port = free_port()  # nothing listens here
    sink = MqttSink(MqttConfig(port=port), close_timeout_s=0.5, reconnect_s=(1, 1))
    sink.emit(event(1, "new", 1.0))
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 5
    assert not sink.connected and sink.connects == 0


def test_a_post_name_is_one_topic_level():
    assert topic_level("post/1+#") == "post_1__" and topic_level("post-1") == "post-1"

