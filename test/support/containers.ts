/**
 * The Docker fallback (testcontainers) for machines without local Postgres/Redis binaries: one
 * container bound to a fixed host port, so it can be signalled (stopped, killed) and started again on the same
 * port with its data, like the local throwaway servers. testcontainers is imported lazily: the local
 * path never loads it.
 */
import { freePort } from "./ports.ts"

export interface ContainerSpec {
  readonly image: string
  readonly containerPort: number
  readonly environment?: Record<string, string>
  readonly command?: ReadonlyArray<string>
  /** Log line that means "ready", and how many times it must appear (Postgres prints it twice). */
  readonly readyLog: RegExp
  readonly readyLogTimes?: number
}

export interface FixedPortContainer {
  /** Host to connect to (the Docker host, usually localhost). */
  readonly host: string
  /** Host port, the same across stop/start. */
  readonly port: number
  /** Sends a signal to the container's main process and waits until the container has stopped. */
  readonly signal: (signal: NodeJS.Signals) => Promise<void>
  /** Starts the stopped container again (same port, same data); the caller checks readiness. */
  readonly start: () => Promise<void>
  /** Stops and removes the container. */
  readonly dispose: () => Promise<void>
}

export const startFixedPortContainer = async (spec: ContainerSpec): Promise<FixedPortContainer> => {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import("testcontainers")
  const hostPort = await freePort()
  let definition = new GenericContainer(spec.image)
    .withExposedPorts({ container: spec.containerPort, host: hostPort })
    .withWaitStrategy(Wait.forLogMessage(spec.readyLog, spec.readyLogTimes ?? 1))
    .withStartupTimeout(120_000)
  if (spec.environment) definition = definition.withEnvironment(spec.environment)
  if (spec.command) definition = definition.withCommand([...spec.command])
  const started = await definition.start()
  const client = await getContainerRuntimeClient()
  const container = client.container.getById(started.getId())
  let disposed = false
  return {
    host: started.getHost(),
    port: hostPort,
    signal: async (signal) => {
      await container.kill({ signal })
      await container.wait()
    },
    start: () => client.container.start(container),
    dispose: async () => {
      if (disposed) return
      disposed = true
      await started.stop({ timeout: 0, remove: true })
    }
  }
}
