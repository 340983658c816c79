// What runs as a server and is not the CLI: the embedded platform of `fn up`, the in-cluster
// components of the platform image (`kubefn-platform gateway|autoscaler|builder`), how a build
// becomes something a driver runs, and the logger they share.

export { startEmbedded, type DriverKind, type EmbeddedOptions, type EmbeddedPlatform, type IsolationStatus, type NatsStatus } from './embedded.js';
export { findOnPath, startLocalNats, type LocalNats, type LocalNatsOptions } from './nats-server.js';
export { appPublisher, podmanLoadPublisher, registryPublisher, type Publisher, type PublishRequest, type Published } from './publish.js';
export {
  componentEnv,
  componentNames,
  componentPort,
  componentServices,
  natsPort,
  natsServers,
  autoscalerConfigMap,
  startComponent,
  type ComponentEnv,
  type ComponentName,
  type RunningComponent,
} from './components.js';
export { main as platformMain } from './main.js';
export { NatsLink, type NatsLinkOptions, type NatsServers } from './nats-link.js';
export { createLogger, humanLine, type Logger, type LoggerOptions } from './logger.js';
