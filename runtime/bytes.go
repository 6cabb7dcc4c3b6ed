package runtime

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Bytes is an amount of memory in bytes. In a configuration it is a whole
// number of bytes, or a string with a binary (Ki, Mi, Gi, Ti, Pi, Ei) or
// decimal (k, M, G, T, P, E) suffix such as "64Mi", as Kubernetes writes
// memory quantities.
type Bytes uint64

// byteUnits are the suffixes ParseBytes knows, binary first so that String
// prefers them.
var byteUnits = []struct {
	suffix string
	size   uint64
}{
	{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10},
	{"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3},
}

// ParseBytes parses a whole number of bytes with an optional suffix
// ("65536", "64Mi", "1G").
func ParseBytes(s string) (Bytes, error) {
	num, unit := s, uint64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = n, u.size
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || num == "" || num[0] == '+' {
		return 0, fmt.Errorf("%q is not a whole number of bytes with an optional suffix such as Mi or G", s)
	}
	hi, lo := bits.Mul64(v, unit)
	if hi != 0 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Bytes(lo), nil
}

// String writes b with the largest suffix that divides it, binary
// preferred ("64Mi"), or as a plain number.
func (b Bytes) String() string {
	for _, u := range byteUnits {
		if b != 0 && uint64(b)%u.size == 0 {
			return strconv.FormatUint(uint64(b)/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatUint(uint64(b), 10)
}

// MarshalJSON writes b as String does.
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads a number of bytes or a string that ParseBytes
// accepts.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	s := string(data) // a number
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	}
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
