"""The bus: the wire contract everyone imports, the Mosquitto runner and the MQTT adapter."""
