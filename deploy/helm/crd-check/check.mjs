// Validates custom resources against the CRD schemas of Strimzi, KEDA, the Prometheus Operator
// and the External Secrets Operator, as published on npm by kubernetes-models:
//   node check.mjs objects.json      (a JSON array of rendered objects)
// Each object is checked twice: by the package's compiled JSON Schema validator (types, enums,
// ranges, required fields) and by the TypeScript compiler against the package's interfaces,
// whose excess-property check refuses any field the CRD does not define (strict). Objects of
// other kinds are left to the Kubernetes schemas. Prints one line per problem; exit 1 if any.
import { readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const PACKAGES = {
  "kafka.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "external-secrets.io": "@kubernetes-models/external-secrets",
};

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const typed = [];
let checked = 0;
for (const [index, object] of objects.entries()) {
  const [group, version] = String(object.apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) continue;
  const where = `${object.kind}/${object.metadata?.name}`;
  const module = `${pkg}/${group}/${version}/${object.kind}`;
  let Model;
  try {
    Model = (await import(module))[object.kind];
  } catch (error) {
    problems.push(`${where}: no schema for ${object.apiVersion} ${object.kind}`);
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push(`${where}: ${error.message}`);
  }
  typed.push({ index, where, module, kind: object.kind, object });
  checked += 1;
}

if (typed.length) {
  const dir = join(here, ".generated");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `objects-${process.pid}.ts`);
  const lines = typed.map(
    ({ index, module, kind }) => `import type { I${kind} as T${index} } from "${module}";`,
  );
  for (const { index, where, object } of typed) {
    lines.push(`// ${where}`);
    lines.push(`export const o${index}: T${index} = ${JSON.stringify(object, null, 1)};`);
  }
  writeFileSync(file, lines.join("\n") + "\n");
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      skipLibCheck: true,
      types: [],
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
      let where = "";
      if (d.file && d.start !== undefined) {
        const before = d.file.text.slice(0, d.start);
        const header = before.lastIndexOf("\n// ");
        where = before.slice(header + 4, before.indexOf("\n", header + 1)) + ": ";
      }
      problems.push(`${where}${text}`);
    }
  } finally {
    rmSync(file, { force: true });
  }
}

for (const problem of problems) console.log(problem);
console.log(`checked ${checked} custom resources, ${problems.length} problem(s)`);
process.exit(problems.length ? 1 : 0);
