package process

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// UserRange as a Spec's User gives each instance a user id of its own,
// taken from Options.UserRange; its group id is the same number.
const UserRange = "@range"

// UIDRange is a range of user ids, First to Last inclusive, reserved for
// instances: no other process should run under them.
type UIDRange struct {
	First, Last int
}

// ParseUIDRange parses "FIRST-LAST", such as "200000-200999". Its error
// is a *runtime.FieldError on "user_range", the setting of the agent's
// process section.
func ParseUIDRange(s string) (UIDRange, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.Atoi(a)
	last, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return UIDRange{}, runtime.BadField("user_range", "%q: want FIRST-LAST, such as 200000-200999", s)
	}
	r := UIDRange{First: first, Last: last}
	if err := r.validate(); err != nil {
		return UIDRange{}, err
	}
	return r, nil
}

// validate checks that r holds at least one user id and not root's.
func (r UIDRange) validate() error {
	if r.First <= 0 || r.Last < r.First {
		return runtime.BadField("user_range", "%d-%d: want FIRST-LAST with FIRST above 0 (root) and LAST not below it, such as 200000-200999", r.First, r.Last)
	}
	return nil
}

// account is who an instance's processes run as.
type account struct {
	uid, gid int
	home     string // HOME: "" for the agent's own, "/" for a user with no entry
	ranged   bool   // taken from the runtime's range, to give back
	other    bool   // not the agent's own user and group
}

// takeAccount resolves a Spec's User: the agent's own user when empty, a
// fresh one of the range for UserRange, else a user name or number,
// optionally followed by ":" and a group name or number. Any other user
// than the agent's needs the agent to run as root.
func (r *Runtime) takeAccount(name string) (account, error) {
	if name == "" {
		return account{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	if os.Geteuid() != 0 {
		return account{}, fmt.Errorf("%w: user %q: only an agent running as root can run instances as another user", spear.ErrConfig, name)
	}
	if name != UserRange {
		a, err := lookupAccount(name)
		a.other = a.uid != os.Geteuid() || a.gid != os.Getegid()
		return a, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users.Last == 0 {
		return account{}, fmt.Errorf("%w: user %s: the runtime has no user range (process.user_range)", spear.ErrConfig, UserRange)
	}
	for uid := r.users.First; uid <= r.users.Last; uid++ {
		if !r.usersTaken[uid] {
			r.usersTaken[uid] = true
			return account{uid: uid, gid: uid, home: "/", ranged: true, other: true}, nil
		}
	}
	return account{}, fmt.Errorf("%w: user %s: every user id of the range %d-%d is taken; widen process.user_range", spear.ErrConfig, UserRange, r.users.First, r.users.Last)
}

// giveBack returns a ranged account's user id to the range.
func (r *Runtime) giveBack(a account) {
	if a.ranged {
		r.mu.Lock()
		delete(r.usersTaken, a.uid)
		r.mu.Unlock()
	}
}

// lookupAccount resolves "user[:group]", each a name or a number. A
// number needs no entry in the user database; a user's group defaults to
// its entry's, else to the user's number.
func lookupAccount(spec string) (account, error) {
	uname, gname, hasGroup := strings.Cut(spec, ":")
	a := account{home: "/"}
	var u *user.User
	var err error
	if n, nerr := strconv.Atoi(uname); nerr == nil {
		a.uid, a.gid = n, n
		u, _ = user.LookupId(uname)
	} else if u, err = user.Lookup(uname); err != nil {
		return a, fmt.Errorf("%w: user %q: %w", spear.ErrConfig, uname, err)
	}
	if u != nil {
		a.uid, _ = strconv.Atoi(u.Uid)
		a.gid, _ = strconv.Atoi(u.Gid)
		a.home = u.HomeDir
	}
	if hasGroup {
		if n, nerr := strconv.Atoi(gname); nerr == nil {
			a.gid = n
		} else if g, err := user.LookupGroup(gname); err != nil {
			return a, fmt.Errorf("%w: group %q: %w", spear.ErrConfig, gname, err)
		} else {
			a.gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return a, nil
}

// credential is what the child's SysProcAttr needs to run as a: its user,
// its group and no supplementary groups; nil for the agent's own user
// and group.
func (a account) credential() *syscall.Credential {
	if !a.other {
		return nil
	}
	return &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: []uint32{}}
}

// validUser reports a Spec's User that cannot name a user, as a
// *runtime.FieldError.
func validUser(name string) error {
	if name == "" || name == UserRange {
		return nil
	}
	u, g, hasGroup := strings.Cut(name, ":")
	if u == "" || (hasGroup && g == "") || strings.ContainsAny(name, " \t\n/") || strings.Count(name, ":") > 1 {
		return runtime.BadField("user", "%q is not a user: want NAME or UID, optionally :GROUP or :GID, or %q", name, UserRange)
	}
	if n, err := strconv.Atoi(u); err == nil && n < 0 {
		return runtime.BadField("user", "%q: a user id is not negative", name)
	}
	return nil
}
