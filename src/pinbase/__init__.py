"""pinbase: a self-hosted IoT device-data server speaking Blynk's Organization datastream API."""

__version__ = "0.1.0"
