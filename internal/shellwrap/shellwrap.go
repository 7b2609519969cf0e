// Package shellwrap holds the shell scripts `clover client` starts a journaled shell run under and the
// directories (slots) the run keeps its files in, shared with the bench, whose spawn ceiling must pay for
// the same shell, trap and files as the client does.
package shellwrap

import (
	"strconv"
	"strings"
)

// Trap runs a journaled command ($2) for the run directory $1: it leaves its own process id
// before the command starts and the command's exit status once it ends, whether or not the client that
// started it is still alive, and exits with that status. The directory is in its command line, which
// tells a restarted client that a process with that id is still this run's (see the client's runsIn). The writes are
// the shell's own, short enough to land whole.
//
// The command runs in the wrapper's own shell, not in a subshell: forking one cost more than everything
// else a journaled run does (on the 2-core VM this was measured on, about as much as starting /bin/sh
// itself; see the client's BenchmarkShellRunParts). The status is written by an EXIT trap, which the shell runs however
// the command ends: at its end, by `exit N`, by `set -e` or `set -u`, by a syntax error. The trap writes
// it in a group whose trace goes nowhere (a command's `set -x` must not add lines to its output), with
// `set -e` off (a status that cannot be written, on a full disk, must not change the exit status the
// client sees), past a `set -C` (>|) and any function the command named echo; the directory's variable
// is read-only, so that a command that assigns it fails loudly instead of losing its status.
//
// Two things would still end the shell without its trap: `exec`, which replaces the shell, and `trap`,
// which replaces ours. A command whose text mentions either runs in a subshell under Sub, as
// every command did before. One that does either out of sight (in a script read with `.`) leaves no
// status: the client that started it still sees its exit status (the process is its child); a client
// restarted while it ran no longer recognizes an exec'ed process (its command line changed), and reports
// the status as unknown, as for a wrapper that was killed.
//
// The pid and status are written in place (<>, never truncated) as one field padded to FieldWidth: a
// file truncated and written again costs ext4 a block freed (a discard on a mount with -o discard) and,
// with auto_da_alloc, a writeback started when it is closed; a slot used again only overwrites a page.
// A reader takes the first field (Field); a slot handed out again is blanked the same way (Blank).
//
// Both take a third argument, the run's tag (RunTag), which the script never reads: it is in the command line
// of the wrapper and of every shell it forks, so that a process is known as this run's, not as a process of
// an earlier run in the same slot that was left in the background.
const Trap = `__clover_dir=$1 __clover_cmd=$2
readonly __clover_dir
set --
printf '%-10s\n' $$ 1<>"$__clover_dir/pid"
trap '{ __clover_status=$?; set +e; unset -f printf; printf "%-10s\n" "$__clover_status" 1<>"$__clover_dir/status"; } 2>/dev/null' EXIT
eval "$__clover_cmd"`

// Sub is Trap for a command that may replace its shell or its EXIT trap: the command
// runs in a subshell (one fork more), so that an `exit`, an `exec` or a `trap` in it ends or changes only
// the subshell, and the wrapper writes the status after it.
const Sub = `__clover_dir=$1 __clover_cmd=$2
set --
printf '%-10s\n' $$ 1<>"$__clover_dir/pid"
( eval "$__clover_cmd" )
__clover_status=$?
printf '%-10s\n' $__clover_status 1<>"$__clover_dir/status"
exit $__clover_status`

// RunTag is the argument that names run of execID in its wrapper's command line.
func RunTag(execID string, run int) string { return "clover-run=" + strconv.Itoa(run) + ":" + execID }

// For is the wrapper a journaled command runs under. The test is on the text, so it errs towards
// the subshell: a command that only names a file "execute.sh" pays for a fork it does not need.
func For(command string) string {
	if strings.Contains(command, "exec") || strings.Contains(command, "trap") {
		return Sub
	}
	return Trap
}

// FieldWidth is the width the wrapper pads the pid and status to (printf %-10s, then a newline).
const FieldWidth = 10

// Field is the value of a pid or status file: its first whitespace-separated field, "" when blank.
func Field(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
