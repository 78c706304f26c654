import CMosquitto
import MQTT
import Glibc

private func propertyID(_ property: mqtt5_property) -> Int32 { Int32(bitPattern: property.rawValue) }

extension PublishProperties {
    /// Builds libmosquitto's property list, lends it to `body`, then frees it (the `_v5` calls copy what they
    /// need, except `will_set_v5`, which is handled in ``makeOwnedList()``).
    func withCList<T>(_ body: (OpaquePointer?) throws(MQTTError) -> T) throws(MQTTError) -> T {
        var list: OpaquePointer? = try makeOwnedList()
        defer { mosquitto_property_free_all(&list) }
        return try body(list)
    }

    /// A property list the caller must free (or hand to a function that takes ownership).
    func makeOwnedList() throws(MQTTError) -> OpaquePointer? {
        var list: OpaquePointer? = nil
        do {
            if let indicator = payloadFormatIndicator {
                try check(mosquitto_property_add_byte(&list, propertyID(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR), indicator),
                          "payload format indicator")
            }
            if let expiry = messageExpiryInterval {
                try check(mosquitto_property_add_int32(&list, propertyID(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL), expiry),
                          "message expiry interval")
            }
            if let contentType {
                try check(mosquitto_property_add_string(&list, propertyID(MQTT_PROP_CONTENT_TYPE), contentType),
                          "content type '\(contentType)'")
            }
            if let responseTopic {
                try MQTTTopic.validatePublishTopic(responseTopic)
                try check(mosquitto_property_add_string(&list, propertyID(MQTT_PROP_RESPONSE_TOPIC), responseTopic),
                          "response topic '\(responseTopic)'")
            }
            if let correlationData {
                guard correlationData.count <= Int(UInt16.max) else {
                    throw MQTTError(.invalidConfiguration, "correlation data of \(correlationData.count) bytes exceeds 65535")
                }
                let rc = correlationData.withUnsafeBytes { bytes in
                    mosquitto_property_add_binary(&list, propertyID(MQTT_PROP_CORRELATION_DATA), bytes.baseAddress,
                                                  UInt16(bytes.count))
                }
                try check(rc, "correlation data")
            }
            for property in userProperties {
                try check(mosquitto_property_add_string_pair(&list, propertyID(MQTT_PROP_USER_PROPERTY), property.name,
                                                             property.value),
                          "user property '\(property.name)'")
            }
        } catch let error as MQTTError {
            mosquitto_property_free_all(&list)
            throw error
        } catch {
            mosquitto_property_free_all(&list)
            throw MQTTError(.invalidConfiguration, "\(error)")
        }
        return list
    }

    /// Copies a received property list (freed by libmosquitto after the callback returns).
    init(borrowing list: OpaquePointer?) {
        self.init()
        var current = list
        while let property = current {
            let id = mosquitto_property_identifier(property)
            switch id {
            case propertyID(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR):
                var value: UInt8 = 0
                if mosquitto_property_read_byte(property, id, &value, false) != nil { payloadFormatIndicator = value }
            case propertyID(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL):
                var value: UInt32 = 0
                if mosquitto_property_read_int32(property, id, &value, false) != nil { messageExpiryInterval = value }
            case propertyID(MQTT_PROP_CONTENT_TYPE):
                contentType = Self.readString(property, id)
            case propertyID(MQTT_PROP_RESPONSE_TOPIC):
                responseTopic = Self.readString(property, id)
            case propertyID(MQTT_PROP_CORRELATION_DATA):
                var pointer: UnsafeMutableRawPointer? = nil
                var length: UInt16 = 0
                if mosquitto_property_read_binary(property, id, &pointer, &length, false) != nil {
                    correlationData = pointer.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(length))) } ?? []
                    free(pointer)
                }
            case propertyID(MQTT_PROP_USER_PROPERTY):
                var name: UnsafeMutablePointer<CChar>? = nil
                var value: UnsafeMutablePointer<CChar>? = nil
                if mosquitto_property_read_string_pair(property, id, &name, &value, false) != nil {
                    userProperties.append(UserProperty(name: name.map { String(cString: $0) } ?? "",
                                                       value: value.map { String(cString: $0) } ?? ""))
                    free(name)
                    free(value)
                }
            default:
                break
            }
            current = mosquitto_property_next(property)
        }
    }

    private static func readString(_ property: OpaquePointer, _ id: Int32) -> String? {
        var value: UnsafeMutablePointer<CChar>? = nil
        guard mosquitto_property_read_string(property, id, &value, false) != nil, let value else { return nil }
        defer { free(value) }
        return String(cString: value)
    }
}
