//go:build !unix

package shard

import (
	"fmt"
	"os"
)

// mapFile reads path into memory where memory mapping is not implemented;
// the slices handed out then alias this copy instead of a mapping.
func mapFile(path string) ([]byte, func() error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%s: empty file", path)
	}
	return data, func() error { return nil }, nil
}
