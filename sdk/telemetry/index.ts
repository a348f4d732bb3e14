// sdk/telemetry: MQTT topics and payload schemas, the agent's TelemetryClient with its SQLite
// outbox, the embedded broker, the receiver with its fleet store, the dashboard and operator commands.
export * from './topics.ts';
export * from './schemas.ts';
export { mqttOptions, checkBrokerUrl, readPem, type ConnectionOptions, type TlsOptions } from './connection.ts';
export { Outbox, migrateOutbox, OUTBOX_DEFAULTS, OUTBOX_SCHEMA_VERSION, type OutboxOptions, type OutboxRow, type OutboxStats, type DropReason } from './outbox.ts';
export { TelemetryClient, type TelemetryClientOptions, type CommandHandler, type CommandContext, type ClientStats } from './client.ts';
export { startEmbeddedBroker, type EmbeddedBroker, type EmbeddedBrokerOptions } from './broker.ts';
export { FleetStore, STORE_SCHEMA_VERSION, type DeviceRow, type TelemetryPoint, type EventRow, type CommandLogRow, type FleetStoreOptions } from './store.ts';
export { Receiver, type ReceiverOptions, type ReceiverStats } from './receiver.ts';
export { Operator, type OperatorOptions } from './operator.ts';
export { startDashboard, type Dashboard, type DashboardOptions } from './dashboard.ts';
export { simulatedDevice, type SimulatedDevice } from './simulate.ts';
