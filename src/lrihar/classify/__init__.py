"""Action classification by templates (paper 3.1.2): template bank, cosine matching, NG, λ."""
