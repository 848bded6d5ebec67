/**
 * A real single-node etcd for integration tests, and a TCP proxy that can freeze the
 * traffic between one client and that etcd (a paused process or a partition, as the
 * client sees it).
 *
 * The `etcd` binary must be on PATH: tests that need etcd fail, they never skip.
 */
export { startEtcd, type EtcdServer } from '../../cluster/etcd.js';
export { startTcpProxy, type TcpProxy } from '../../cluster/tcp-proxy.js';
