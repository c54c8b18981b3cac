"""The MQTT device API (Blynk's device MQTT API), served inside the pinbase process.

Three layers: `codec` turns bytes into MQTT 3.1.1 and 5 packets and back (with `properties`,
MQTT 5's properties, `reasons`, its reason codes, and `errors`, what the codec raises);
`session` is one device connection as a sans-IO state machine (what a device sees, documented
there); `transport` is the asyncio listener that feeds sessions from sockets and performs their
requests with the app layer.

Why no embedded broker: pinbase implements the MQTT 3.1.1 and 5 subset it needs with its own
codec instead of embedding amqtt's broker. pinbase is not a general broker: devices only talk to the
server (no device-to-device routing, no retained messages or wildcard fan-out between clients),
and an embedded broker would put its own session/topic machinery and an extra hop between the
socket and pinbase's write path, while the hooks pinbase needs (token as password, every
publish into the write path, downlink injected to one client) are the whole of the job. What
amqtt 0.12.1 offers for those hooks: authentication plugins
(`BaseAuthPlugin.authenticate(session=...) -> bool | None`), topic plugins
(`BaseTopicPlugin.topic_filtering(session, topic, action)`) and event hooks such as
`on_broker_message_received`, which the broker fires without waiting for them (`fire_event`
with `wait=False`), so a QoS 1 PUBACK could not wait for pinbase's durable write; and its
`BrokerContext.broadcast_message(topic, data)` sends to every subscriber of a topic, not to the
one connection of a device.
"""
