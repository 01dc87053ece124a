// moenative: the MoeNative command line (info, run, verify, bench, ptx dump). See CliApp.
return MoeNative.Cli.CliApp.Invoke(args);
