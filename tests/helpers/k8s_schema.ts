/**
 * Offline validation of Kubernetes objects against their schemas: the `kubernetes-models`
 * packages for built-in kinds and the KEDA / prometheus-operator CRDs, and a JSON schema
 * taken from the Gateway API Inference Extension's CRD for InferencePool (no npm package
 * models it). Unknown kinds are an error, so every object rendered is checked.
 */
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { Ajv } from "ajv";
import { readTextFile } from "./platform.ts";

/** A Kubernetes object as rendered. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any;
}

type Validator = (obj: K8sObject) => void;

const model = (Model: new (data: any) => { validate(): void }): Validator => (obj) => new Model(obj).validate();

async function inferencePoolValidator(): Promise<Validator> {
  const schema = JSON.parse(await readTextFile(new URL("../../deploy/k8s/schemas/inferencepool-v1.json", import.meta.url)));
  delete schema.$comment;
  // CRD schemas carry Kubernetes extensions (x-kubernetes-*) and formats like int32.
  const validate = new Ajv({ strict: false, validateFormats: false, allErrors: true }).compile(schema);
  return (obj) => {
    if (!validate(obj)) throw new Error(validate.errors!.map((e) => `${e.instancePath} ${e.message}`).join("; "));
  };
}

/** Validators by `apiVersion/kind`. */
export async function validators(): Promise<Map<string, Validator>> {
  return new Map<string, Validator>([
    ["apps/v1/Deployment", model(Deployment)],
    ["v1/Service", model(Service)],
    ["policy/v1/PodDisruptionBudget", model(PodDisruptionBudget)],
    ["keda.sh/v1alpha1/ScaledObject", model(ScaledObject)],
    ["monitoring.coreos.com/v1/PodMonitor", model(PodMonitor)],
    ["inference.networking.k8s.io/v1/InferencePool", await inferencePoolValidator()],
  ]);
}

/** Throws unless `obj` is a known kind and valid against its schema. */
export function validateObject(table: Map<string, Validator>, obj: K8sObject): void {
  const v = table.get(`${obj.apiVersion}/${obj.kind}`);
  if (!v) throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
  v(obj);
}
