#ifndef CMOSQUITTO_SHIM_H
#define CMOSQUITTO_SHIM_H
// mosquitto.h does not include mqtt_protocol.h, which holds MQTT_PROP_*, MQTT_RC_* and MQTT_SUB_OPT_*.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#endif
