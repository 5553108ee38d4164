"""Runtime items to an MQTT broker (paho-mqtt 2.x), with the conventions plants know from Frigate.

Topics, all under ``run.mqtt.topic_prefix`` (``lrihar`` by default):

- ``<prefix>/available``: ``online`` (retained, published again on every connect), ``stopped`` on a
  clean close, ``offline`` as the last will (QoS 1, retained) when the process dies or the link is lost.
- ``<prefix>/events``: ``{"type": "new"|"update"|"end", "before": <the event's previous message or
  null>, "after": <the event now>}``, not retained.
- ``<prefix>/cycles``, ``<prefix>/alerts``, ``<prefix>/gaps``: each item's ``to_dict()``, not retained.
- ``<prefix>/<post>/cycle``: the post's last finished cycle, retained (a dashboard that connects
  later sees it at once). Alerts are never retained: a late subscriber must not raise an old alarm.
- ``<prefix>/run/set`` (subscribed only when ``on_command`` is given): a command's text payload.

The network runs on paho's own thread (``loop_start``); it reconnects with a growing delay and
subscribes again in ``on_connect`` (subscriptions die with a broker restart). QoS 1/2 messages
published while disconnected wait in paho's bounded queue and go out on reconnect; past the bound
they are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lrihar.config import MqttConfig
from lrihar.events import RuntimeItem

log = logging.getLogger(__name__)
_LIST_TOPICS = {"cycle": "cycles", "alert": "alerts", "gap": "gaps"}


def topic_level(name: str) -> str:
    """``name`` as one topic level: MQTT's separator and wildcards (``/ + #``) and NUL become ``_``."""
    return re.sub(r"[/+#\x00]", "_", name) or "_"


class MqttSink:
    """Publishes events, cycles, alerts and gaps; see the module docstring for topics and payloads.

    Args:
        config: broker, credentials, topic prefix, QoS, keepalive.
        on_command: called (on paho's thread) with the text of each ``<prefix>/run/set`` message.
        max_queued: messages held while the broker is away; more are dropped (``dropped``).
        close_timeout_s: how long ``close`` waits for unacknowledged QoS 1/2 messages.
        reconnect_s: first and longest wait between reconnection attempts (doubling in between).
    """

    def __init__(self, config: MqttConfig, on_command: Callable[[str], None] | None = None,
                 max_queued: int = 10_000, close_timeout_s: float = 5.0,
                 reconnect_s: tuple[int, int] = (1, 30)) -> None:
        self.config = config
        self.prefix = config.topic_prefix.rstrip("/")
        self.name = f"MQTT {config.host}:{config.port}"
        self.on_command = on_command
        self.close_timeout_s = close_timeout_s
        self.connected = False
        self.connects = 0  # successful connections, the first included
        self.published = 0  # messages handed to paho (queued or sent)
        self.dropped = 0  # messages refused: queue full, or QoS 0 while disconnected
        self._last: dict[int, dict] = {}  # open event id -> its last `after` (the next `before`)
        self._lock = threading.Condition()
        self._unacked: set[int] = set()  # mids of QoS 1/2 messages not acknowledged yet
        # mids acknowledged before publish() returned. QoS 0 mids land here too (on_publish cannot
        # tell them apart); mids are < 65536, so the set stays bounded.
        self._early: set[int] = set()
        self._closed = False

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id or "")
        if config.username:
            client.username_pw_set(config.username, config.password)
        # Set before connecting: the broker publishes it for us if we vanish.
        client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(*reconnect_s)
        client.max_queued_messages_set(max_queued)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client
        # connect_async + loop_start: a broker that is down at start is retried like a lost one.
        client.connect_async(config.host, config.port, keepalive=config.keepalive)
        client.loop_start()

    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    def emit(self, item: RuntimeItem) -> None:
        data = item.to_dict()
        if item.type == "event":
            before = self._last.get(item.id)
            if item.state == "end":
                self._last.pop(item.id, None)
            else:
                self._last[item.id] = data
            self._publish(self.topic("events"), {"type": item.state, "before": before, "after": data})
        elif item.type in _LIST_TOPICS:
            self._publish(self.topic(_LIST_TOPICS[item.type]), data)
            if item.type == "cycle":
                self._publish(self.topic(topic_level(item.post), "cycle"), data, retain=True)

    def close(self) -> None:
        """Publish ``stopped``, wait (at most ``close_timeout_s``) for unacknowledged messages, disconnect."""
        if self._closed:
            return
        self._closed = True
        self._publish(self.topic("available"), "stopped", retain=True, qos=1)
        deadline = time.monotonic() + self.close_timeout_s
        with self._lock:
            while self._unacked and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            left = len(self._unacked)
        if left:
            log.warning("mqtt: %d message(s) not acknowledged by %s:%s within %.0f s", left,
                        self.config.host, self.config.port, self.close_timeout_s)
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self, topic: str, payload: dict | str, retain: bool = False, qos: int | None = None) -> None:
        qos = self.config.qos if qos is None else qos
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        # Not under self._lock: paho calls on_publish holding its own lock, which publish() takes too.
        info = self.client.publish(topic, text, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS):
            self.dropped += 1
            return
        self.published += 1
        if qos:
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._unacked.add(info.mid)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt: %s:%s refused the connection: %s", self.config.host, self.config.port,
                        reason_code)
            return
        self.connected = True
        self.connects += 1
        self._publish(self.topic("available"), "online", retain=True, qos=1)
        if self.on_command is not None:
            client.subscribe(self.topic("run", "set"), qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        if not self._closed:
            log.warning("mqtt: lost %s:%s (%s); reconnecting", self.config.host, self.config.port,
                        reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
                self._lock.notify_all()
            else:
                self._early.add(mid)

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.on_command(message.payload.decode("utf-8", "replace"))
        except Exception:  # a bad command must not stop the network thread
            log.exception("mqtt: command %r failed", message.payload[:200])
