package model_test

import (
	"testing"

	"github.com/gallop-dev/gallop/model"
)

func TestNewTransformer(t *testing.T) {
	m, err := model.NewTransformer(50, 51, 3, model.TransformerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if m.D != 64 || m.Layers != 2 || m.Heads != 4 || m.FF != 256 {
		t.Errorf("defaults %+v", m.TransformerConfig)
	}
	if _, err := model.NewTransformer(50, 51, 3, model.TransformerConfig{D: 10, Heads: 4}); err == nil {
		t.Error("D not a multiple of Heads: no error")
	}
	if _, err := model.NewTransformer(0, 51, 3, model.TransformerConfig{}); err == nil {
		t.Error("window 0: no error")
	}
}

func TestTransformerGradient(t *testing.T) {
	m, _ := model.NewTransformer(5, 4, 3, model.TransformerConfig{D: 8, Heads: 2, Layers: 2})
	gradCheck(t, m, 5, 4)
}

func TestTransformerPacking(t *testing.T) {
	m, _ := model.NewTransformer(10, 4, 3, model.TransformerConfig{D: 16, Heads: 2, Layers: 2})
	packingParity(t, m, 4)
}
