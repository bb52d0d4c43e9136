"""What a consumer service reports about itself, whichever sink it runs: its metric points
(``metrics``), sent over DogStatsD (``statsd``), and the APM spans that continue the proxy's
traces (``tracing``). Both consumer services use this layer; neither sink imports the other."""
