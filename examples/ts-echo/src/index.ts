// ts-echo: a Spear function in TypeScript.
//
// Methods:
//   ""/"echo"  answers "<instance id>|<payload>"
//   "upper"    answers the payload in upper case
//   "stream"   writes the payload back one word per chunk
//   "sleep"    waits the milliseconds in the payload, unless cancelled first

import { setTimeout as sleep } from "node:timers/promises";

import { type Request, run } from "@spear-go/sdk";

const id = process.env.SPEAR_INSTANCE_ID ?? "";

const echo = (req: Request) => `${id}|${req.text}`;

run({
  "": echo,
  echo,
  upper: (req) => req.text.toUpperCase(),
  stream: async (req) => {
    for (const word of req.text.split(/\s+/).filter(Boolean)) {
      req.write(word);
      await req.drain();
    }
  },
  sleep: async (req) => {
    await sleep(Number(req.text) || 0, undefined, { signal: req.signal });
    return `${id}|slept ${req.text}`;
  },
});
