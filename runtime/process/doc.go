// Package process is the runtime for instances that are child processes of
// the agent (spear.Process). What an instance runs is a [Spec]; importing
// the package registers its runtime.Kind, so that a function of runtime
// "process" decodes into one.
//
// Start creates the instance's channel, launches the command and waits
// until the child connects back and authenticates. The child gets a
// minimal environment (PATH, LANG, TZ, HOME, the variables its Spec's
// InheritEnv names, its Spec's Env) and the channel's credentials: the
// SPEAR_* variables of docs/protocol.md, its secret through an inherited
// pipe (SPEAR_SECRET_FD), never in its environment unless the function
// asks for it. The protocol runs over the channel's socket only; the
// child's stdout and stderr are plain output, captured line by line into
// the agent's log and a per-instance ring buffer (Instance.Logs), so stray
// prints never disturb the handshake.
//
// # Isolation
//
// Every child leads a session of its own (setsid). Its unix socket admits
// only a peer in that session and of its user (the channel's
// Config.CheckPeer): no other process can join a session, so no sibling
// can pass, even with the secret. A function may run as another user
// (Spec.User), given by name or number or taken from a range of user ids
// (Options.UserRange), when the agent runs as root.
//
// Each instance runs in a cgroup v2 of its own when the machine allows it
// (Options.Cgroups), under a subtree the runtime makes in the agent's
// cgroup, with the memory, CPU and process limits of its Spec, and is
// killed whole through cgroup.kill; a kill for its memory limit is its
// own stop reason (ReasonOutOfMemory). Without cgroups, New says so and
// falls back: the agent becomes a child subreaper, what an instance leaves
// in its session is killed and reaped by a sweeper, and memory and process
// limits become rlimits set before the program runs. Either way the
// instance is all its processes: when its first process exits, the rest
// are killed, and Stop escalates from a terminate signal over the channel
// to SIGTERM for its process group and then SIGKILL for all of it.
//
// Children die with the agent (PR_SET_PDEATHSIG). The signal is tied to
// the thread that forked the child, so one goroutine, locked to its
// thread, forks every child and outlives them all; no thread is held per
// instance (see forker). With Options.Leftovers, the runtime records its
// cgroups (or its instances' sessions) in the agent's state directory,
// and the next agent kills what a dead one left (internal/leftover).
//
// Output lines from both streams are logged with the attributes instance,
// pid and stream (runtime.Output): a structured line (JSON or logfmt, as
// log/slog writes) as a record with its own level, message and
// attributes, any other line as it is, at Info — the SDK itself logs to
// stderr, so stderr is not a sign of trouble. Instance.FollowLogs follows
// the output until the process has exited. The child's environment is
// never logged.
//
// # Goroutines
//
// Each instance has:
//
//   - a reaper, which starts the child (through the forking goroutine),
//     waits for its exit parked on a pidfd in the network poller (not in a
//     system call that would hold a thread), kills what is left of the
//     instance, closes the channel, reaps the child, drains its output and
//     finally closes Done;
//   - two output readers, one per stream, ending at EOF;
//   - a watcher, from running until exit, which turns channel
//     disconnections into StatusUnhealthy and reconnections back into
//     StatusRunning, and samples the channel's statistics for
//     Info.LastHealthCheck;
//   - while Stop escalates, a stopper, ending when the process exits.
//
// All of them end once the process has exited; Runtime.Close waits for
// them. Shared by the runtimes of a process: the forking goroutine, while
// any child it forked lives, and without cgroups the sweeper, while a
// runtime needs it.
//
// The package builds on Unix-like systems; sessions and process groups
// are all it has outside Linux, where cgroups, the subreaper, limits,
// pidfds and the parent-death signal are.
package process
