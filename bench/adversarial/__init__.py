"""The paper's section 4.3: adversarial examples as anomalies (Table 2, Figure 4)."""
