package batch

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
)

func shapeF32(dims ...int) shapes.Shape { return shapes.Make(dtypes.Float32, dims...) }
func shapeI32(dims ...int) shapes.Shape { return shapes.Make(dtypes.Int32, dims...) }
