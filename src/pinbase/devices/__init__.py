"""Device-facing interfaces: HTTP device API, Blynk hardware protocol over TCP, MQTT."""
