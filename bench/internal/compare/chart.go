package compare

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/streamworker/streamworker/bench/internal/systems"
)

// The charts' colours: produce and consume bars; one line per system, in
// the order of entryNames.
var (
	produceColor = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	consumeColor = color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff}
	lineColors   = []color.Color{
		color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff}, // ours
		color.RGBA{R: 0xe8, G: 0x9a, B: 0x3c, A: 0xff}, // ours at the daemon's defaults
		color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}, // bare
		color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}, // bare, pipelined
		color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}, // asynq
		color.RGBA{R: 0x55, G: 0xa8, B: 0x68, A: 0xff}, // watermill
	}
)

// drawCharts writes the charts the results have data for into dir and
// returns their file names.
func drawCharts(res *Results, dir string) ([]string, error) {
	var names []string
	if len(res.Throughput) > 0 {
		if err := throughputChart(res).Save(10*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "throughput.png")); err != nil {
			return nil, err
		}
		names = append(names, "throughput.png")
	}
	if len(res.Latency) > 0 {
		if err := latencyChart(res).Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "latency.png")); err != nil {
			return nil, err
		}
		names = append(names, "latency.png")
	}
	if len(res.Workloads) > 0 {
		if err := workloadsChart(res).Save(10*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "workloads.png")); err != nil {
			return nil, err
		}
		names = append(names, "workloads.png")
	}
	return names, nil
}

// chartLabel is an entry's name on a chart's axis: short, on two lines.
func chartLabel(name string) string {
	switch name {
	case oursDefaults:
		return "streamworker\n(daemon's defaults)"
	case systems.Bare:
		return "bare go-redis\nloop"
	case systems.BarePipelined:
		return "bare go-redis loop\n(pipelined)"
	case systems.Watermill:
		return "Watermill\nredisstream"
	}
	return label(name)
}

// workloadsChart is one bar per variant of the workload phases: its median
// msgs/s as a share of its phase's reference (the ideal rate for io, the
// first variant for the others), labelled with the msgs/s.
func workloadsChart(res *Results) *plot.Plot {
	p := plot.New()
	p.Title.Text = "Workloads: median msgs/s ÷ the reference (io: the ideal; producer-cli: redis-cli --pipe; others: the system's first bar in the phase)\n" + caption(res)
	p.Y.Label.Text = "ratio"
	p.Y.Min = 0
	var vals plotter.Values
	var names []string
	var tags plotter.XYLabels
	for _, w := range res.Workloads {
		if len(w.Runs) == 0 {
			continue
		}
		m := w.rate().Median
		v := m / workloadReference(res.Options, res.Workloads, w)
		tags.XYs = append(tags.XYs, plotter.XY{X: float64(len(vals)), Y: v})
		tags.Labels = append(tags.Labels, shortCount(m))
		vals = append(vals, v)
		name := w.Name
		if w.Phase == PhaseIO {
			name = chartLabel(w.System)
		}
		names = append(names, w.Phase+"\n"+name)
	}
	if bars, err := plotter.NewBarChart(vals, vg.Points(28)); err == nil {
		bars.Color = consumeColor
		bars.LineStyle.Width = 0
		p.Add(bars)
	}
	if lb, err := plotter.NewLabels(tags); err == nil {
		for i := range lb.TextStyle {
			lb.TextStyle[i].XAlign = draw.XCenter
			lb.TextStyle[i].YAlign = draw.YBottom
		}
		lb.Offset = vg.Point{Y: vg.Points(3)}
		p.Add(lb)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(7)
	p.Y.Max *= 1.15
	return p
}

// throughputChart is a grouped bar chart: produce and consume msgs/s per
// system, the median as the bar, min and max as a whisker, the median as a
// label.
func throughputChart(res *Results) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Throughput: %s messages of %d B, median of %d runs (whiskers: min–max)\n%s",
		fmtInt(float64(res.Options.Msgs)), res.Options.Payload, res.Options.Runs, caption(res))
	p.Y.Label.Text = "messages per second"
	p.Y.Min = 0
	p.Y.Tick.Marker = thousandsTicks{}
	p.Legend.Top = true
	p.Legend.XOffs = -4

	names := make([]string, len(res.Throughput))
	for i, t := range res.Throughput {
		names[i] = chartLabel(t.System)
	}
	const shift = 0.2 // data units between a group's centre and each bar
	for k, series := range []struct {
		name  string
		color color.Color
		rate  func(Throughput) summary
	}{
		{"produce", produceColor, Throughput.produceRate},
		{"consume", consumeColor, Throughput.consumeRate},
	} {
		vals := make(plotter.Values, len(res.Throughput))
		var whiskers rangeErrors
		var tags plotter.XYLabels
		for i, t := range res.Throughput {
			s := series.rate(t)
			if math.IsNaN(s.Median) {
				continue
			}
			x := float64(i) + (float64(k)*2-1)*shift
			vals[i] = s.Median
			whiskers.XYs = append(whiskers.XYs, plotter.XY{X: x, Y: s.Median})
			whiskers.YErrors = append(whiskers.YErrors, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
			tags.XYs = append(tags.XYs, plotter.XY{X: x, Y: s.Max})
			tags.Labels = append(tags.Labels, shortCount(s.Median))
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(30))
		if err != nil {
			continue // no data for this series
		}
		bars.XMin = (float64(k)*2 - 1) * shift
		bars.Color = series.color
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(series.name, bars)
		if len(whiskers.XYs) > 0 {
			if eb, err := plotter.NewYErrorBars(whiskers); err == nil {
				eb.Width = vg.Points(1)
				p.Add(eb)
			}
			if lb, err := plotter.NewLabels(tags); err == nil {
				for i := range lb.TextStyle {
					lb.TextStyle[i].XAlign = draw.XCenter
					lb.TextStyle[i].YAlign = draw.YBottom
				}
				lb.Offset = vg.Point{Y: vg.Points(3)}
				p.Add(lb)
			}
		}
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Max *= 1.1 // room for the labels
	return p
}

// caption says what made a chart: the command, the machine, the versions.
func caption(res *Results) string {
	m := res.Machine
	return fmt.Sprintf("%s · %s · %d × %s · redis-server %s · %s · load %.1f",
		res.Command, res.Started.UTC().Format("2006-01-02"), m.CPUs, m.CPUModel, m.RedisVersion, m.GoVersion, max(m.LoadStart, m.LoadEnd))
}

// rangeErrors are the whiskers of the bars.
type rangeErrors struct {
	plotter.XYs
	plotter.YErrors
}

// latencyChart plots each system's latency against the percentile, both
// on log scales, so that the median and the tail fit on one picture.
func latencyChart(res *Results) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency, send to handler start, at %s msgs/s offered", fmtInt(res.Options.LatencyRate))
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Title.Text += "\n" + caption(res)
	p.X.Label.Text = "percentile"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Scale = plot.LogScale{}
	p.Legend.XOffs = -8 // bottom right: the tails rise away from it
	p.Legend.YOffs = 8

	most := 0
	for i, l := range res.Latency {
		m := len(l.Sorted)
		if m == 0 {
			continue
		}
		most = max(most, m)
		// x = 1/(1-q): 1 at the minimum, 2 at p50, 100 at p99, m at the max.
		const points = 400
		var xys plotter.XYs
		for j := range points {
			x := math.Pow(float64(m), float64(j)/float64(points-1))
			q := 1 - 1/x
			v := float64(percentile(l.Sorted, max(q, 1/float64(m)))) / 1e6
			xys = append(xys, plotter.XY{X: x, Y: math.Max(v, 0.001)})
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			continue
		}
		line.Color = lineColors[i%len(lineColors)]
		if k := slices.Index(entryNames, l.System); k >= 0 {
			line.Color = lineColors[k%len(lineColors)]
		}
		line.Width = vg.Points(2)
		p.Add(line)
		p.Legend.Add(label(l.System), line)
	}
	var ticks plot.ConstantTicks
	for _, t := range []struct {
		x     float64
		label string
	}{{1, "0"}, {2, "50"}, {10, "90"}, {100, "99"}, {1000, "99.9"}, {10000, "99.99"}, {100000, "99.999"}} {
		if t.x <= float64(max(most, 2)) {
			ticks = append(ticks, plot.Tick{Value: t.x, Label: t.label})
		}
	}
	p.X.Tick.Marker = ticks
	p.X.Min = 1
	p.Add(plotter.NewGrid())
	return p
}

// thousandsTicks labels a linear axis with about six round values written
// "50k", "100k".
type thousandsTicks struct{}

func (thousandsTicks) Ticks(lo, hi float64) []plot.Tick {
	if hi <= lo {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: shortCount(v)})
	}
	return ticks
}

// shortCount writes 128400 as "128k" and 1250 as "1.3k".
func shortCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 10e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
