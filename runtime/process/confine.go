package process

import "github.com/spear-go/spear/runtime"

// CgroupMode says whether a Runtime puts its instances in cgroups.
type CgroupMode string

// The cgroup modes; the empty mode is CgroupsAuto.
const (
	// CgroupsAuto puts each instance in a cgroup v2 of its own when the
	// machine allows it, and otherwise falls back to killing by process
	// group and session, with the agent as child subreaper, and to
	// rlimits. New announces which, and goes on either way.
	CgroupsAuto CgroupMode = "auto"
	// CgroupsNone always uses the fallback. (Not "off", which YAML reads
	// as false.)
	CgroupsNone CgroupMode = "none"
	// CgroupsRequired makes New fail where cgroups cannot be used.
	CgroupsRequired CgroupMode = "required"
)

// Validate checks m is one of the modes, or empty. Its error is a
// *runtime.FieldError on "cgroups", the setting of the agent's process
// section.
func (m CgroupMode) Validate() error {
	switch m {
	case "", CgroupsAuto, CgroupsNone, CgroupsRequired:
		return nil
	}
	return runtime.BadField("cgroups", "%q: want %s, %s or %s", string(m), CgroupsAuto, CgroupsNone, CgroupsRequired)
}
