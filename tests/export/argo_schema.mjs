// Checks Argo documents against Argo's published schema, as compiled by @kubernetes-models/argo-workflows.
// Usage: node argo_schema.mjs PACKAGE_DIR < [documents as a JSON array]; prints a JSON array: null (valid) or
// the schema's error text, one per document.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const root = join(process.argv[2], "argoproj.io", "v1alpha1");
const kinds = {
  Workflow: (await import(pathToFileURL(join(root, "Workflow.js")))).Workflow,
  WorkflowTemplate: (await import(pathToFileURL(join(root, "WorkflowTemplate.js")))).WorkflowTemplate,
};
const docs = JSON.parse(readFileSync(0, "utf8"));
const out = docs.map((doc) => {
  const Model = kinds[doc.kind];
  if (!Model) return `unknown kind ${doc.kind}`;
  try {
    new Model(doc).validate();
    return null;
  } catch (err) {
    return String(err.message);
  }
});
process.stdout.write(JSON.stringify(out));
