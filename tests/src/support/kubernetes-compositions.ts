// The kubernetes driver composed the ways kubefn runs it, for tests on the test cluster:
//   standalone  KubernetesDriver.open(): driver and Function controller in one process;
//   cluster     as the components compose it: the gateway's driver (its own objects, the
//               pending-pod prober, no reconciler) next to the autoscaler pod's Function
//               controller on objects of its own, as two pods would hold them.

import type { KubeConfig } from '@kubernetes/client-node';
import { FunctionReconciler, KubefnObjects, KubernetesDriver, PendingPodProber } from '@kubefn/platform';

export interface ComposedDriver {
  driver: KubernetesDriver;
  close(): Promise<void>;
}

export async function clusterComposedDriver(kubeconfig: KubeConfig | string, namespace: string, onWarning?: (message: string, err?: unknown) => void): Promise<ComposedDriver> {
  const controllerObjects = await KubefnObjects.open({ kubeconfig, namespace, watchServices: true, ...(onWarning ? { onWarning } : {}) });
  const reconciler = new FunctionReconciler(controllerObjects);
  const gatewayObjects = await KubefnObjects.open({ kubeconfig, namespace, ...(onWarning ? { onWarning } : {}) }).catch(async (err: unknown) => {
    await reconciler.close();
    await controllerObjects.stop();
    throw err;
  });
  const prober = new PendingPodProber();
  const driver = new KubernetesDriver(gatewayObjects, { prober });
  return {
    driver,
    close: async () => {
      await driver.close();
      prober.close();
      await reconciler.close();
      await Promise.all([gatewayObjects.stop(), controllerObjects.stop()]);
    },
  };
}
