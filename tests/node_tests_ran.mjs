// A node:test reporter that writes one JSON line per test that finished
// (file, name, pass/fail, skip or todo reason), for tests/check_tests_ran.py
// to check that every test file ran something and nothing was skipped.
//   node --test --test-reporter=spec --test-reporter-destination=stdout \
//     --test-reporter=<this file> --test-reporter-destination=<out.jsonl> ...
export default async function* testsRan(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { file, name, nesting, skip, todo } = event.data;
    // Suites (describe) report too; only leaf tests and top-level tests count
    // as a test, which the details' type tells apart.
    if (event.data.details && event.data.details.type === 'suite') continue;
    yield JSON.stringify({
      type: event.type,
      file: file ?? null,
      name,
      nesting,
      skip: skip === undefined || skip === false ? null : String(skip),
      todo: todo === undefined || todo === false ? null : String(todo),
    }) + '\n';
  }
}
