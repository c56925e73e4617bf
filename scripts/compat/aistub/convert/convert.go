// Package convert stands in for decK's AI-gateway converter, which the
// module proxy here does not serve; only `deck ai` commands use it, and
// make compat runs none of them.
package convert

import "errors"

// Options mirrors the converter's options decK sets.
type Options struct{ OutputMode string }

// Convert always fails: the converter is not part of this build.
func Convert([]byte, Options) ([]byte, []string, error) {
	return nil, nil, errors.New("the AI gateway converter is not included in this decK build")
}
