"""python-agent: a Spear function in Python, standard library only, that
answers a question the way an LLM agent does: it plans, calls a tool, then
streams its long answer token by token.

There is no model here: the "reasoning" is a few lines of deterministic
text, so the example runs anywhere. What it shows is the shape of such a
function on Spear: a streamed reply, with pacing, that stops as soon as the
caller hangs up.

Methods:
  ""/"ask"  streams the answer to the question in the payload: a plan line,
            a tool line, then the answer, one word per chunk. Metadata
            "delay_ms" sets the pause between tokens (default 15).
  "tools"   lists the agent's tools, one per line.
"""

import asyncio
import hashlib
import re

import spear

TOOLS = {
    "word_count": lambda q: f"{len(q.split())} words",
    "checksum": lambda q: hashlib.sha256(q.encode()).hexdigest()[:12],
    "keywords": lambda q: ", ".join(sorted({w for w in re.findall(r"[a-z]{5,}", q.lower())})[:5]) or "none",
}

ANSWER = (
    "Here is how I would approach '{q}'. First, restate the question in my "
    "own words, so that we agree on what is being asked. Second, break it "
    "into the parts that can be checked on their own, and look each of them "
    "up with the tools at hand: the {tool} tool says {result}. Third, weigh "
    "what came back against what is already known, and say plainly where "
    "the evidence is thin. Finally, answer in a sentence or two, then offer "
    "the details for anyone who wants them. That is the whole method: "
    "restate, split, look up, weigh, answer."
)


def plan(question: str) -> "tuple[str, str]":
    """Pick a tool for the question, as an agent's planner would."""
    names = sorted(TOOLS)
    tool = names[int(hashlib.sha256(question.encode()).hexdigest(), 16) % len(names)]
    return tool, TOOLS[tool](question)


async def ask(req: spear.Request) -> None:
    question = req.text.strip() or "what is Spear?"
    delay = int(req.metadata.get("delay_ms", "15")) / 1000
    tool, result = plan(question)
    req.write(f"[plan] answer '{question}' with the {tool} tool\n")
    req.write(f"[tool] {tool} -> {result}\n")
    for i, word in enumerate(ANSWER.format(q=question, tool=tool, result=result).split()):
        req.write(word if i == 0 else " " + word)
        await req.drain()
        if delay:
            await asyncio.sleep(delay)  # cancelled here when the caller gives up
    req.write("\n")


async def tools(req: spear.Request) -> str:
    return "\n".join(sorted(TOOLS))


if __name__ == "__main__":
    spear.run({"": ask, "ask": ask, "tools": tools})
