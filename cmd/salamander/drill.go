package main

import (
	"context"
	"fmt"
	"io"
)

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return fmt.Errorf("drill: not built yet")
}
