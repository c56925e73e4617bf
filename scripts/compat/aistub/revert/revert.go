// Package revert stands in for decK's AI-gateway converter (see convert).
package revert

import "errors"

// Options mirrors the converter's options.
type Options struct{ OutputMode string }

// Revert always fails: the converter is not part of this build.
func Revert([]byte, Options) ([]byte, []string, error) {
	return nil, nil, errors.New("the AI gateway converter is not included in this decK build")
}
