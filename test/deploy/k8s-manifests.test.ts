/**
 * deploy/k8s/ against the code it runs: every manifest parses, kustomization.yaml lists
 * them all, the speedlayer containers pass only flags their role has (as `speedlayer
 * shard --help` / `coordinator --help` list them) and every flag the role requires, the
 * `$(VAR)`s they use are defined, and the pieces fit: selectors, the headless Service
 * behind each shard's advertised name, the volume under its data directory, the probes
 * on the ports the processes listen on, and the shard count the first ring waits for.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

import { roleFlagList, type Role } from '../../cluster/role-args.js';

const DIR = path.resolve(import.meta.dirname, '../../deploy/k8s');
const ROLES: readonly Role[] = ['shard', 'coordinator'];

type Labels = Record<string, string>;

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: { grpc?: { port: number }; tcpSocket?: unknown; httpGet?: unknown };
  livenessProbe?: { grpc?: { port: number }; tcpSocket?: unknown; httpGet?: unknown };
  resources?: { requests?: Record<string, string> };
  volumeMounts?: { name: string; mountPath: string }[];
}

interface PodSpec {
  terminationGracePeriodSeconds?: number;
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string }[];
}

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
  data?: Record<string, string>;
  resources?: string[];
  spec?: {
    replicas?: number;
    serviceName?: string;
    podManagementPolicy?: string;
    clusterIP?: string;
    selector?: Labels | { matchLabels: Labels };
    ports?: { name: string; port: number }[];
    template?: { metadata: { labels: Labels; annotations?: Labels }; spec: PodSpec };
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
}

function load(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'));

  return docs.map((doc) => {
    expect(doc.errors, `${file}: ${doc.errors.join('; ')}`).toEqual([]);
    return doc.toJS() as Manifest;
  });
}

const kustomization = load('kustomization.yaml')[0] as Manifest;
const manifests = (kustomization.resources ?? []).flatMap(load);
const workloads = manifests.filter((m) => m.kind === 'StatefulSet' || m.kind === 'Deployment');
const configMaps = new Map(
  manifests.filter((m) => m.kind === 'ConfigMap').map((m) => [m.metadata.name, m.data ?? {}]),
);

function named(kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/k8s`);

  return found;
}

function matches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function podSpec(workload: Manifest): PodSpec {
  return workload.spec?.template?.spec as PodSpec;
}

/** The speedlayer containers and the role each runs: `args[0]` of a `speedlayer` image. */
function roleContainers(): { workload: Manifest; container: Container; role: Role }[] {
  return workloads.flatMap((workload) => {
    const spec = podSpec(workload);
    return [...spec.containers, ...(spec.initContainers ?? [])]
      .filter((c) => c.image.split(':')[0] === 'speedlayer' && c.command === undefined)
      .map((container) => ({ workload, container, role: container.args?.[0] as Role }));
  });
}

/** `--flag=value` and `--flag value` arguments, by flag. */
function flagsOf(args: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 1; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('--')) throw new Error(`stray argument '${arg}' in ${args.join(' ')}`);
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(0, eq), arg.slice(eq + 1));
    else flags.set(arg, args[++i] ?? '');
  }

  return flags;
}

function shardContainer(): {
  workload: Manifest;
  container: Container;
  flags: Map<string, string>;
} {
  const found = roleContainers().find((c) => c.role === 'shard');
  if (found === undefined) throw new Error('no shard container');

  return { ...found, flags: flagsOf(found.container.args ?? []) };
}

describe('deploy/k8s manifests', () => {
  it('parse, are all listed in kustomization.yaml, and name no namespace', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...(kustomization.resources ?? [])].sort()).toEqual(files.sort());
    for (const m of manifests) {
      expect(m.apiVersion, m.metadata.name).toBeTruthy();
      expect(m.metadata.namespace, `${m.kind} ${m.metadata.name}`).toBeUndefined();
    }
    expect(manifests.map((m) => m.kind).sort()).toEqual(
      [
        'ConfigMap',
        'Deployment',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'Service',
        'Service',
        'Service',
        'Service',
        'StatefulSet',
        'StatefulSet',
      ].sort(),
    );
  });

  it('pass each speedlayer role only flags it has, and every flag it requires', () => {
    const found = roleContainers();
    expect(found.map((f) => f.role).sort()).toEqual(['coordinator', 'shard']);

    for (const { container, role } of found) {
      expect(ROLES).toContain(role);
      const known = roleFlagList(role);
      const given = flagsOf(container.args ?? []);
      for (const flag of given.keys()) {
        expect(
          known.map((k) => k.flag),
          `speedlayer ${role} has no ${flag}`,
        ).toContain(flag);
      }
      for (const { flag } of known.filter((k) => k.required)) {
        expect([...given.keys()], `speedlayer ${role} needs ${flag}`).toContain(flag);
      }
      for (const [flag, value] of given) expect(value, `${role} ${flag}`).not.toBe('');
    }
  });

  it('define every $(VAR) their arguments use, from env or the ConfigMap', () => {
    for (const workload of workloads) {
      const spec = podSpec(workload);
      for (const container of [...spec.containers, ...(spec.initContainers ?? [])]) {
        const defined = new Set((container.env ?? []).map((e) => e.name));
        for (const from of container.envFrom ?? []) {
          const name = from.configMapRef?.name as string;
          const data = configMaps.get(name);
          expect(data, `ConfigMap ${name}`).toBeDefined();
          for (const key of Object.keys(data ?? {})) defined.add(key);
        }
        const used = (container.args ?? []).flatMap((a) =>
          [...a.matchAll(/\$\(([A-Z0-9_]+)\)/g)].map((m) => m[1] as string),
        );
        for (const name of used)
          expect([...defined], `${container.name}: $(${name})`).toContain(name);
        // The init container's shell script reads the ConfigMap through the environment.
        const script = container.command?.includes('sh') ? (container.args ?? []).join('\n') : '';
        for (const m of script.matchAll(/\$\{?(SPEEDLAYER_[A-Z0-9_]+)/g)) {
          expect([...defined], `${container.name}: $${m[1]}`).toContain(m[1]);
        }
      }
    }
  });

  it('give each shard its own volume, a stable advertised name behind a headless Service, and probes on its port', () => {
    const { workload, container, flags } = shardContainer();
    const spec = workload.spec ?? {};
    expect(workload.kind).toBe('StatefulSet');
    expect(spec.podManagementPolicy).toBe('Parallel');

    const headless = named('Service', spec.serviceName as string);
    expect(headless.spec?.clusterIP).toBe('None');
    expect(matches(headless.spec?.selector as Labels, spec.template?.metadata.labels ?? {})).toBe(
      true,
    );

    const port = Number(flags.get('--port'));
    expect(flags.get('--advertise')).toBe(`$(POD_NAME).${spec.serviceName}:${port}`);
    expect(container.ports?.map((p) => p.containerPort)).toContain(port);
    expect(headless.spec?.ports?.map((p) => p.port)).toContain(port);
    expect(container.readinessProbe?.grpc?.port).toBe(port);
    // NOT_SERVING while waiting for the ring must not restart the pod.
    expect(container.livenessProbe?.grpc).toBeUndefined();
    expect(flags.get('--host')).toBe('0.0.0.0');
    expect(flags.get('--watermark')).toBe('wall-clock');
    expect(container.env?.map((e) => e.name)).toContain('SPEEDLAYER_POSTGRES_URL');

    // Metrics on their own port, declared where Prometheus looks for them.
    const metricsPort = Number(flags.get('--metrics-port'));
    expect(metricsPort).toBeGreaterThan(0);
    expect(metricsPort).not.toBe(port);
    expect(flags.get('--metrics-host')).toBe('0.0.0.0');
    expect(container.ports?.map((p) => p.containerPort)).toContain(metricsPort);
    expect(headless.spec?.ports?.map((p) => p.port)).toContain(metricsPort);
    expect(spec.template?.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(metricsPort),
    });

    const claims = (spec.volumeClaimTemplates ?? []).map((v) => v.metadata.name);
    const dataMount = container.volumeMounts?.find((v) => v.mountPath === flags.get('--data-dir'));
    expect(claims).toContain(dataMount?.name);
    expect(podSpec(workload).terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);

    const config = configMaps.get('speedlayer-config') ?? {};
    expect(spec.replicas).toBe(Number(config.SPEEDLAYER_SHARDS));
  });

  it('run two coordinators with probes on the Coordinator port, and cover every workload with selectors and budgets', () => {
    const coordinator = roleContainers().find((c) => c.role === 'coordinator');
    expect(coordinator?.workload.kind).toBe('Deployment');
    expect(coordinator?.workload.spec?.replicas).toBe(2);
    const flags = flagsOf(coordinator?.container.args ?? []);
    const statusPort = Number(flags.get('--port'));
    expect(coordinator?.container.readinessProbe?.grpc?.port).toBe(statusPort);
    expect(coordinator?.container.livenessProbe?.grpc?.port).toBe(statusPort);
    const ports = coordinator?.container.ports?.map((p) => p.containerPort);
    expect(ports).toEqual([statusPort, Number(flags.get('--metrics-port'))]);
    expect(flags.get('--host')).toBe('0.0.0.0');

    for (const workload of workloads) {
      const labels = workload.spec?.template?.metadata.labels ?? {};
      const selector = workload.spec?.selector as { matchLabels: Labels };
      expect(matches(selector.matchLabels, labels), workload.metadata.name).toBe(true);
      for (const c of podSpec(workload).containers) {
        expect(c.resources?.requests?.cpu, c.name).toBeTruthy();
        expect(c.resources?.requests?.memory, c.name).toBeTruthy();
        expect(c.readinessProbe, c.name).toBeDefined();
        expect(c.livenessProbe, c.name).toBeDefined();
      }
    }
    const podLabels = workloads.map((w) => w.spec?.template?.metadata.labels ?? {});
    for (const service of manifests.filter((m) => m.kind === 'Service')) {
      const selector = service.spec?.selector as Labels;
      expect(
        podLabels.some((l) => matches(selector, l)),
        service.metadata.name,
      ).toBe(true);
    }
    for (const name of ['speedlayer-shard', 'speedlayer-coordinator']) {
      const budget = named('PodDisruptionBudget', name);
      const selector = (budget.spec?.selector as { matchLabels: Labels }).matchLabels;
      expect(
        podLabels.some((l) => matches(selector, l)),
        name,
      ).toBe(true);
    }
  });
});
