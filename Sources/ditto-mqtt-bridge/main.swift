print("ditto-mqtt-bridge")
