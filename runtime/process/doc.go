// Package process is the runtime for instances that are child processes of
// the agent (spear.Process). What an instance runs is a [Spec]; importing
// the package registers its runtime.Kind, so that a function of runtime
// "process" decodes into one.
//
// Start creates the instance's channel, launches the command with the
// channel's credentials in its environment (the SPEAR_* variables of
// docs/protocol.md), and waits until the child connects back and
// authenticates. The protocol runs over the channel's socket only; the
// child's stdout and stderr are plain output, captured line by line into
// the agent's log and a per-instance ring buffer (Instance.Logs), so stray
// prints never disturb the handshake.
//
// Every child leads its own process group, dies with the agent (on Linux,
// through PR_SET_PDEATHSIG) and is always reaped. The instance is the whole
// group: when the leader exits, whatever it left in its group is killed,
// and Stop escalates from a terminate signal over the channel to SIGTERM
// and then SIGKILL for the whole group.
//
// Output lines from both streams are logged with the attributes instance,
// pid and stream (runtime.Output): a structured line (JSON or logfmt, as
// log/slog writes) as a record with its own level, message and
// attributes, any other line as it is, at Info — the SDK itself logs to
// stderr, so stderr is not a sign of trouble. Instance.FollowLogs follows
// the output until the process has exited. The child's environment, which holds its secret, is
// never logged.
//
// Once the child is forked, its channel accepts connections only from its
// process group (the runtime's channel.Config.CheckPeer). A child quick
// enough to connect in the instant between fork and its pid being recorded
// is accepted without
// the check; it still has to present the per-instance secret, which only
// it holds, so the check is defence in depth and the window costs nothing.
//
// # Goroutines
//
// Each instance has:
//
//   - a reaper, which forks the child from an OS thread it keeps locked
//     until the child is reaped (the parent-death signal is tied to the
//     forking thread), waits for the exit, kills what is left of the
//     group, closes the channel, reaps the child, drains its output and
//     finally closes Done;
//   - two output readers, one per stream, ending at EOF;
//   - a watcher, from running until exit, which turns channel
//     disconnections into StatusUnhealthy and reconnections back into
//     StatusRunning, and samples the channel's statistics for
//     Info.LastHealthCheck;
//   - while Stop escalates, a stopper, ending when the process exits.
//
// All of them end once the process has exited; Runtime.Close waits for
// them.
//
// The package builds on Unix-like systems; process-group cleanup after
// the leader's exit and the parent-death signal are Linux only.
package process
