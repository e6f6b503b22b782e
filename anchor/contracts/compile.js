// Compile a solc standard-JSON input (stdin) with the pinned npm `solc`; print
// {"version": <solc long version>, "output": <standard-JSON output>} on stdout.
// Driven by anchor/build.py, which owns the input and the settings.
"use strict";

const solc = require("solc");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const output = JSON.parse(solc.compile(input));
  process.stdout.write(JSON.stringify({ version: solc.version(), output }));
});
