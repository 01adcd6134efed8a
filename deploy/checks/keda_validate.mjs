// validates keda objects against keda's crd schemas, compiled into @kubernetes-models/keda.
// usage: node keda_validate.mjs NODE_DIR < [{"file": ..., "doc": {...}}, ...]
// prints one line per invalid object ("<file>: <kind>/<name>: <reason>") and exits 1 if any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const nodeDir = process.argv[2];
const models = join(nodeDir, "node_modules", "@kubernetes-models", "keda", "keda.sh", "v1alpha1");
const items = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const { file, doc } of items) {
  const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
  let Model;
  try {
    Model = (await import(pathToFileURL(join(models, `${doc.kind}.js`)).href))[doc.kind];
  } catch {
    console.log(`${where}: keda has no kind ${doc.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    console.log(`${where}: invalid against keda's schema: ${String(e.message).split("\n")[0]}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
