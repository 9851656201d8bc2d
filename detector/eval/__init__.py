"""What measures detection on labelled data: NAB (`nab`), Loghub sessions and lines (`loghub`), the
simulator's ground truth (`detection`) and root-cause accuracy (`rootcause`). Stages never import it."""
