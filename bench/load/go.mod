module twistedstream/bench/load

go 1.19
