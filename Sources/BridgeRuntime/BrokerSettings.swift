public import BridgeConfig
import MQTT
public import Mosquitto

extension MQTTConfiguration {
    /// The client configuration for one of the config file's broker connections.
    public init(_ connection: BrokerConnection) {
        self.init()
        host = connection.host
        port = connection.port
        version = connection.mqttVersion
        clientID = connection.clientID
        keepAlive = connection.keepalive
        cleanStart = connection.cleanStart
        sessionExpiry = connection.sessionExpiry
        if let username = connection.username {
            credentials = Credentials(username: username, password: connection.password?.value)
        }
        tls = connection.tls
        maxInflightPublishes = connection.maxInflight
        reconnect = connection.reconnect
    }
}
